"""The centre's own policy: its terms (the veto), how they are read, and their tables of cases."""
