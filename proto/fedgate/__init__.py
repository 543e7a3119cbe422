"""fedgate: the generated contract (`fedgate.v1`) and the one `fedgate` command's dispatcher."""
