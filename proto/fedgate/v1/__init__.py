"""Generated code of the fedgate.v1 contract. Never edited by hand: change the .proto, run `make proto`."""
