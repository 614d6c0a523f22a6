"""The reply engine: what runs a reply, from its start to its final save, in every process.

generation (a reply: provider -> event log -> database, and the checkpointer), stale (replies
left by a dead process), follower (a reply followed from the database). Nothing here imports
the services or the views: they call down into this package, never the other way round.
"""
