"""Local stand-ins for the APIs syncpoint grew from, for tests and ``syncpoint demo``."""
