"""Daily digests: drift, expiring credentials, cost and capacity, database health.

Each builder returns a `bot.digests.model.DigestReport`; `bot.digests.scheduler` runs them at
their cron times (each run first claims its `(digest, slot)` row, so it is posted once across
replicas), `bot.digests.store` remembers findings between runs, and
`bot.slack.render.digest` renders them.
"""
