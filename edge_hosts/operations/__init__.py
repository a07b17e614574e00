"""Day-2 operations on a running site: upgrades, snapshots, backup and restore, certificates, reset and
status. Imports steps and the packages below it; never bootstrap or tasks."""
