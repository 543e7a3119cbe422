"""The member sites: who is connected, what they offer, the site side of the protocol, their logs."""
