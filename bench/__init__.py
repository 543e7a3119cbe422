"""Benchmarks that measure fedgate against the budgets in DESIGN.md ("Budgets"), run with `make bench`.

Each benchmark starts the real server in a process of its own and drives it from this process over real
mTLS, next to a bare grpc.aio baseline driven by the same client, so a figure always comes with the cost of
the transport it sits on. Benchmarks report; they never assert a timing (tests never time anything).
"""
