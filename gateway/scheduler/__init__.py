"""The scheduler: the cycle, its working memory, earmarks between cycles, live usage, launching."""
