#!/usr/bin/env python3
"""dcctl openstack-lab smoke check (based on the research recipe's verify.py).

Creates a project + member user, network + subnet, flavor, tiny image, boots
one server to ACTIVE, creates a 1 GiB volume, attaches and detaches it, then
deletes everything it created. Prints one line per step with its duration;
exits 1 if a step failed (clean-up is attempted in any case).

usage: OS_CLIENT_CONFIG_FILE=/var/lib/dcctl-oslab/clouds.yaml python3 smoke.py [--cloud NAME]
"""
import argparse
import importlib.metadata
import inspect
import sys
import time

import openstack

ap = argparse.ArgumentParser()
ap.add_argument('--cloud', default='dcctl-lab-admin')
args = ap.parse_args()

FAILED = []


def step(name, fn):
    t0 = time.monotonic()
    try:
        res = fn()
    except Exception as e:  # noqa: BLE001
        dt = time.monotonic() - t0
        print(f'FAIL  {dt:7.2f}s  {name}: {type(e).__name__}: {e}'[:800], flush=True)
        FAILED.append(name)
        return None
    dt = time.monotonic() - t0
    print(f'OK    {dt:7.2f}s  {name}', flush=True)
    return res


def wait_volume(conn, vol_id, want, timeout=120):
    t0 = time.monotonic()
    while True:
        v = conn.block_storage.get_volume(vol_id)
        if v.status == want:
            return v
        if v.status in ('error', 'error_attaching', 'error_detaching'):
            raise RuntimeError(f'volume went to {v.status}')
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f'volume still {v.status} after {timeout}s')
        time.sleep(0.5)


T0 = time.monotonic()
print(f'openstacksdk {importlib.metadata.version("openstacksdk")} from {openstack.__file__}', flush=True)
admin = step('authenticate as admin (token)',
             lambda: (lambda c: (c.auth_token, c)[1])(openstack.connect(cloud=args.cloud)))
if admin is None:
    sys.exit(1)

sfx = f'{int(time.time())}'
name = f'dcctl-smoke-{sfx}'
pw = f'pw-{sfx}-smoke'
made = {}


def mk_project():
    made['project'] = admin.identity.create_project(
        name=name, domain_id='default', description='dcctl openstack-lab smoke')
    return made['project']


def mk_user():
    u = admin.identity.create_user(name=name, password=pw, domain_id='default',
                                   default_project_id=made['project'].id)
    made['user'] = u
    admin.identity.assign_project_role_to_user(made['project'], u,
                                               admin.identity.find_role('member'))
    return u


def tenant_connect():
    # explicit credentials: do not merge the clouds.yaml cloud (401s otherwise)
    return openstack.connect(
        auth_url=admin.config.config['auth']['auth_url'], username=name, password=pw,
        project_id=made['project'].id, user_domain_name='Default',
        project_domain_name='Default', region_name='RegionOne',
        load_yaml_config=False, load_envvars=False)


try:
    ok = step('create project', mk_project) and step('create user + member role', mk_user)
    tenant = ok and step('authenticate as tenant user', lambda: (lambda c: (c.auth_token, c)[1])(tenant_connect()))
    if tenant:
        net = step('create network', lambda: made.setdefault(
            'network', tenant.network.create_network(name=name)))
        sub = net and step('create subnet', lambda: made.setdefault(
            'subnet', tenant.network.create_subnet(network_id=net.id, name=name, ip_version=4,
                                                   cidr='10.250.0.0/24')))
        flavor = step('create flavor (admin)', lambda: made.setdefault(
            'flavor', admin.compute.create_flavor(name=name, ram=256, vcpus=1, disk=1,
                                                  is_public=True)))
        image = step('upload image (8 KiB raw)', lambda: made.setdefault(
            'image', admin.image.create_image(name=name, data=b'\0' * 8192, disk_format='raw',
                                              container_format='bare', visibility='public',
                                              allow_duplicates=True, wait=True)))
        server = None
        if sub and flavor and image:
            server = step('boot server -> ACTIVE', lambda: tenant.compute.wait_for_server(
                made.setdefault('server', tenant.compute.create_server(
                    name=name, flavor_id=flavor.id, image_id=image.id,
                    networks=[{'uuid': net.id}])),
                status='ACTIVE', wait=120, interval=0.5))
            if server:
                step('server has an IP on the network', lambda: (lambda ips: ips or (_ for _ in ()).throw(
                    RuntimeError('no address')))(
                    [a['addr'] for a in tenant.compute.get_server(server.id).addresses.get(name, [])]))
        vol = step('create 1 GiB volume -> available', lambda: wait_volume(
            tenant, made.setdefault('volume', tenant.block_storage.create_volume(
                name=name, size=1)).id, 'available'))
        if server and vol:
            def attach():
                tenant.compute.create_volume_attachment(server, volume_id=vol.id)
                made['attached'] = True
                return wait_volume(tenant, vol.id, 'in-use', 60)
            if step('attach volume -> in-use', attach):
                def detach():
                    # openstacksdk >= 1.0: (server, volume); 0.x (Debian's 0.101): (attachment, server),
                    # where nova's attachment id is the volume id
                    params = list(inspect.signature(tenant.compute.delete_volume_attachment).parameters)
                    if params[0] == 'server':
                        tenant.compute.delete_volume_attachment(server, vol.id, ignore_missing=False)
                    else:
                        tenant.compute.delete_volume_attachment(vol.id, server, ignore_missing=False)
                    made.pop('attached')
                    return wait_volume(tenant, vol.id, 'available', 60)
                step('detach volume -> available', detach)
finally:
    def cleanup():
        errs = []

        def tryit(fn):
            try:
                fn()
            except Exception as e:  # noqa: BLE001
                errs.append(f'{type(e).__name__}: {e}')
        conn = admin
        if 'server' in made:
            tryit(lambda: conn.compute.delete_server(made['server'].id))
            tryit(lambda: conn.compute.wait_for_delete(made['server'], interval=0.5, wait=120))
        if 'volume' in made:
            tryit(lambda: wait_volume(conn, made['volume'].id, 'available', 60))
            tryit(lambda: conn.block_storage.delete_volume(made['volume'].id))
            tryit(lambda: conn.block_storage.wait_for_delete(made['volume'], interval=0.5, wait=60))
        if 'network' in made:   # the subnet goes with it
            tryit(lambda: conn.network.delete_network(made['network'].id))
        if 'image' in made:
            tryit(lambda: conn.image.delete_image(made['image'].id))
        if 'flavor' in made:
            tryit(lambda: conn.compute.delete_flavor(made['flavor'].id))
        if 'user' in made:
            tryit(lambda: conn.identity.delete_user(made['user'].id))
        if 'project' in made:  # neutron made the project's 'default' security group on first use: it goes too
            tryit(lambda: [conn.network.delete_security_group(g)
                           for g in conn.network.security_groups(project_id=made['project'].id)])
            tryit(lambda: conn.identity.delete_project(made['project'].id))
        if errs:
            raise RuntimeError('; '.join(errs))
    step('delete everything (server, volume, network, image, flavor, user, project)', cleanup)

print(f'TOTAL {time.monotonic() - T0:.1f}s; failed steps: {FAILED or "none"}', flush=True)
sys.exit(1 if FAILED else 0)
