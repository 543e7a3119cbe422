"""Jobs as vendors see them: the nouns, the job file, admission, the job book and its events."""
