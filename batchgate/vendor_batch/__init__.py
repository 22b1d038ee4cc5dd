"""The vendor batch lane (issue 15): lines offered to the vendors' own batch APIs at their batch
price, polled from the reconciler's periodic loop, results written back through the recorder's
path; lines the vendor did not serve continue online.

- `submit`: group waiting lines per deployment into jobs (an intent row first), submit them.
- `poll`: look at jobs in flight (with backoff), cancel those past the deadline margin.
- `ingest`: stream an ended job's results into items, in groups.
- `lane`: one round of all three, what the reconciler calls.
"""
