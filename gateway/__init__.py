"""fakelens HTTP gateway: image upload -> all Triton models -> one verdict."""
