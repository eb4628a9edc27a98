"""The live process: drivers that perform effects, the executor's background duties, leases."""
