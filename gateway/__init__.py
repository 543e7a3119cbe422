"""The fedgate federation gateway: admission, placement, dispatch and tracking of federated jobs."""
