"""The Shopify channel."""
