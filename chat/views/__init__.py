"""The chat app's pages, one module per part of the product (conversations, library, search, …)."""
