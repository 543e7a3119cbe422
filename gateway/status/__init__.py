"""The status page: what one caller may see of the federation (`view`), as one HTML document (`render`)."""
