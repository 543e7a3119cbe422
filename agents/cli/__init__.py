"""`fedgate agent ...`: the site operator's command line."""
