"""The row lock that serialises the writers of one incident or one proposal.

PostgreSQL's FOR NO KEY UPDATE, not FOR UPDATE. Inserting a child row (an alert, a timeline
entry, a proposal, an approval) takes FOR KEY SHARE on its parent, which FOR UPDATE waits
for: a transaction that inserted a child and then locks the parent, and another that updated
the parent and then locks it, would each wait for the other (a deadlock). FOR NO KEY UPDATE
still makes writers of the row queue, and no code changes a primary key. SQLite ignores row
locks; its BEGIN IMMEDIATE serialises writers.

Use `select(...).with_for_update(**ROW_LOCK)` or `session.get(..., with_for_update=ROW_LOCK)`.
"""

ROW_LOCK = {"key_share": True}
