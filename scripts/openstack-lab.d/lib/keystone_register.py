#!/usr/bin/python3
"""dcctl openstack-lab: idempotently create the service project, the service
users (password reset on every run) and the catalog (6 services x 3
interfaces). Run with Debian's /usr/bin/python3, which has openstacksdk.

Environment: DCCTL_OSLAB_ADMIN_PASSWORD, DCCTL_OSLAB_SERVICE_PASSWORD.
"""
import os

import openstack

AUTH_URL = 'http://127.0.0.1:5000/v3'
admin_pw = os.environ['DCCTL_OSLAB_ADMIN_PASSWORD']
svc_pw = os.environ['DCCTL_OSLAB_SERVICE_PASSWORD']

conn = openstack.connect(auth_url=AUTH_URL, username='admin', password=admin_pw,
                         project_name='admin', user_domain_name='Default',
                         project_domain_name='Default', region_name='RegionOne',
                         load_yaml_config=False, load_envvars=False)
idp = conn.identity
svc_proj = idp.find_project('service') or idp.create_project(name='service', domain_id='default')
admin_role = idp.find_role('admin')
# nova/cinder/neutron need the 'service' role for service tokens in newer RBAC
service_role = idp.find_role('service') or idp.create_role(name='service')
for name in ('glance', 'placement', 'nova', 'neutron', 'cinder'):
    u = idp.find_user(name, domain_id='default')
    if u:
        idp.update_user(u, password=svc_pw)
    else:
        u = idp.create_user(name=name, password=svc_pw, domain_id='default',
                            default_project_id=svc_proj.id)
    idp.assign_project_role_to_user(svc_proj, u, admin_role)
    idp.assign_project_role_to_user(svc_proj, u, service_role)

services = [
    ('glance', 'image', 'http://127.0.0.1:9292'),
    ('placement', 'placement', 'http://127.0.0.1:8778'),
    ('nova', 'compute', 'http://127.0.0.1:8774/v2.1'),
    ('neutron', 'network', 'http://127.0.0.1:9696'),
    ('cinderv3', 'volumev3', 'http://127.0.0.1:8776/v3'),
    ('cinder', 'block-storage', 'http://127.0.0.1:8776/v3'),
]
existing = {s.type: s for s in idp.services()}
eps = list(idp.endpoints())
for name, stype, url in services:
    s = existing.get(stype) or idp.create_service(name=name, type=stype, is_enabled=True)
    for iface in ('public', 'internal', 'admin'):
        if not any(e.service_id == s.id and e.interface == iface for e in eps):
            idp.create_endpoint(service_id=s.id, interface=iface, url=url, region_id='RegionOne')
print('keystone catalog ready')
