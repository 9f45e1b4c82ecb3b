#!/usr/bin/python3
"""dcctl openstack-lab: wait until every nova and cinder RPC service is up.

usage: wait_ready.py [--timeout SECONDS] [--once] [BINARY=SINCE ...]

Every one of nova-compute, nova-scheduler, nova-conductor, cinder-volume,
cinder-scheduler and cinder-backup must be reported 'up' by its API, and the
fake hypervisor must be listed. A BINARY=SINCE argument (epoch seconds)
additionally requires a heartbeat newer than SINCE: right after a restart the
scheduler still sees the *old* compute heartbeat and answers NoValidHost, so
the script waits for a heartbeat sent since the service was (re)started.

--once checks a single time (for 'status'). Prints the missing services and
exits 1 when not ready. Run with Debian's /usr/bin/python3 (keystoneauth1).
Environment: DCCTL_OSLAB_ADMIN_PASSWORD.
"""
import argparse
import datetime
import os
import sys
import time

from keystoneauth1 import session
from keystoneauth1.identity import v3

NOVA = ('nova-conductor', 'nova-scheduler', 'nova-compute')
CINDER = ('cinder-scheduler', 'cinder-volume', 'cinder-backup')

ap = argparse.ArgumentParser()
ap.add_argument('--timeout', type=float, default=240)
ap.add_argument('--once', action='store_true')
ap.add_argument('since', nargs='*', help='BINARY=EPOCH')
args = ap.parse_args()
since = {}
for item in args.since:
    b, _, t = item.partition('=')
    since[b] = datetime.datetime.utcfromtimestamp(float(t))

s = session.Session(auth=v3.Password(
    auth_url='http://127.0.0.1:5000/v3', username='admin',
    password=os.environ['DCCTL_OSLAB_ADMIN_PASSWORD'], project_name='admin',
    user_domain_name='Default', project_domain_name='Default'))


def problems(svcs, binary):
    rows = [x for x in svcs if x['binary'] == binary]
    if not rows:
        return '%s: not registered' % binary
    for x in rows:
        if x['state'] != 'up' or not x.get('updated_at'):
            continue
        ts = datetime.datetime.fromisoformat(x['updated_at'].split('.')[0].rstrip('Z'))
        if binary in since and ts < since[binary]:
            continue
        return None
    x = rows[0]
    if binary in since and x['state'] == 'up':
        return '%s: no heartbeat since its start (last %s)' % (binary, x.get('updated_at'))
    return '%s: %s (last heartbeat %s)' % (binary, x['state'], x.get('updated_at'))


t0 = time.time()
while True:
    try:
        ep = {'service_type': 'compute', 'interface': 'public'}
        nova = s.get('/os-services', endpoint_filter=ep, timeout=10).json()['services']
        hyp = s.get('/os-hypervisors', endpoint_filter=ep, timeout=10).json()['hypervisors']
        cinder = s.get('/os-services', endpoint_filter={'service_type': 'volumev3'},
                       timeout=10).json()['services']
        missing = [p for p in (problems(nova, b) for b in NOVA) if p]
        missing += [p for p in (problems(cinder, b) for b in CINDER) if p]
        if not hyp:
            missing.append('nova: no hypervisor listed')
    except Exception as e:  # APIs still starting
        missing = ['API error: %s: %s' % (type(e).__name__, e)]
    if not missing:
        if not args.once:
            print('RPC services ready after %.1fs' % (time.time() - t0))
        sys.exit(0)
    if args.once or time.time() - t0 > args.timeout:
        for m in missing:
            print('NOT READY: %s' % m)
        sys.exit(1)
    time.sleep(1)
