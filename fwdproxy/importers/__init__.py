"""`fwdproxy import`: SquidGuard, e2guardian and UT1 configurations turned into a rules
folder and ``policy.yaml`` that decide the same.

Each importer reads its source into an `model.Imported` (categories, groups, ordered
policies and notes on what could not be carried over, each with its ``file:line``);
`writer` writes that out and loads the result back as the proxy would, so a folder that
would not start is never reported as a success.
"""
