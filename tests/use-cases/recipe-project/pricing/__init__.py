"""Prices and discounts, in integer cents."""
