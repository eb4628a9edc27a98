"""The only code that speaks SQL or knows the driver: statements, rows, pools, migrations."""
