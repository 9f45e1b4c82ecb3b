"""dcctl openstack-lab: Cinder volume driver for CI: cinder's FakeLoggingVolumeDriver, but every
volume is a sparse file so that cinder-backup (posix driver) can read it via
os-brick's 'local' connector. No LVM, no iSCSI, no root helpers needed."""
import os

from cinder.tests import fake_driver

VOL_DIR = '/var/lib/cinder/dcctl-oslab-volumes'


class FileFakeVolumeDriver(fake_driver.FakeLoggingVolumeDriver):

    def _path(self, volume):
        return os.path.join(VOL_DIR, 'volume-%s' % volume['id'])

    def _touch(self, volume):
        os.makedirs(VOL_DIR, exist_ok=True)
        with open(self._path(volume), 'ab') as f:
            f.truncate(int(volume['size']) * 1024 ** 3)

    def create_volume(self, volume):
        self._touch(volume)
        return super().create_volume(volume)

    def create_volume_from_snapshot(self, volume, snapshot):
        self._touch(volume)

    def create_cloned_volume(self, volume, src_vref):
        self._touch(volume)

    def extend_volume(self, volume, new_size):
        self._touch(dict(id=volume['id'], size=new_size))

    def delete_volume(self, volume):
        try:
            os.unlink(self._path(volume))
        except FileNotFoundError:
            pass

    def initialize_connection(self, volume, connector):
        self._touch(volume)
        return {'driver_volume_type': 'local',
                'data': {'device_path': self._path(volume), 'access_mode': 'rw'}}
