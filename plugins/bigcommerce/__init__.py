"""The BigCommerce channel."""
