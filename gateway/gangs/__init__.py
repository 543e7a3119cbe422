"""Jobs that span sites: planning a gang, two-phase holds at the sites, and how parts add up."""
