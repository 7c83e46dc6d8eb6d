"""Chaos soak (issue 19): `python -m bench.soak` (`make soak`). Modules: stack (servers), proxy
(the balancer), clients (the members, one process per share), schedule (the chaos events), report
(the end's accounting); __main__ runs them and prints the one-screen report. See docs/soak.md."""
