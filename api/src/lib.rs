//! kiln-api: the REST API over the inventory and provisioner, token auth with roles, `/metrics` and the hall
//! map page. Not built yet: see the inventory web API issue.
