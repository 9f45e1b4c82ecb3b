"""The OpenStack provider: county tenancies as keystone projects with quotas, networks, servers and volumes."""
