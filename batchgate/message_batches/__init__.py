"""Anthropic's Message Batches API on top of batchgate's batches.

An Anthropic batch is a batchgate batch whose id starts `msgbatch_`: each request's `params`
become an OpenAI chat line (so it routes like any other line, to any vendor), and each finished
line comes back in Anthropic's `message` shape. `parse` checks the batch as Anthropic does,
`convert` translates both ways, `views` builds the batch object and the result lines.
"""
