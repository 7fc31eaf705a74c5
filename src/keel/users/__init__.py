"""Accounts: registration, profile, password change, admin listing and deactivation."""
