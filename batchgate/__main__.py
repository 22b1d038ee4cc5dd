from batchgate.cli import main

main()
