"""The scheduler: the queue, the cycle and its loop, its working memory, earmarks between cycles, live usage, the
launcher, and the outlook (why a job waits)."""
