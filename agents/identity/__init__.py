"""The site's identity: its key and certificate, enrolment, pinning the gateway's CA, renewal."""
