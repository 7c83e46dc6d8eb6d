"""Use cases: validate, write, commit, then publish. Routes and the realtime hooks call these."""
