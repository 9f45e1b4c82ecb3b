"""The inventory: YAML files → a typed, validated model of the province."""

from dcctl.inventory.inventory import Inventory
from dcctl.inventory.loader import load_inventory

__all__ = ["Inventory", "load_inventory"]
