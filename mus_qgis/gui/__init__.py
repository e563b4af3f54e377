"""The plugin's own windows, opened from its menu (not Processing dialogs): service keys."""
