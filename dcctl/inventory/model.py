"""The typed inventory: what a province declares, one frozen object per YAML mapping, each knowing its source line.

Glossary (one word per concept): a *data center* has a *tier* and *backends* (OpenStack clouds or libvirt hosts) that
serve network *zones*; a *tenancy* is a county government's or a department's hosted space in one data center and one
zone; a *workload* is a system (servers, volumes, an MLPS level, a DR policy) inside a tenancy.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    WithJsonSchema,
    model_validator,
)
from pydantic_core.core_schema import ValidatorFunctionWrapHandler

from dcctl.diagnostics import SourceRange
from dcctl.inventory.yamlsource import SRC_KEY, Src

ID_PATTERN = r"^[a-z][a-z0-9-]{0,62}$"
Id = Annotated[
    str,
    Field(
        pattern=ID_PATTERN,
        description="lower-case letters, digits and '-', starting with a letter, at most 63 characters",
    ),
]

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: object) -> object:
    """'30s', '15m', '4h', '2d', '1w' → timedelta; a bare number is minutes. Other input is left for the type error."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return timedelta(minutes=value)
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match:
            return timedelta(seconds=float(match.group(1)) * _DURATION_UNITS[match.group(2)])
        raise ValueError(f"'{value}' is not a duration; write a number and a unit, like 30s, 15m, 4h or 2d")
    return value


def format_duration(value: timedelta) -> str:
    """The shortest exact spelling of a duration: 900 s → '15m'."""
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^\d+(\.\d+)?(s|m|min|h|d|w)$"},
                {"type": "number", "description": "minutes"},
            ],
            "examples": ["15m", "4h", "2d"],
        }
    ),
]


def _parse_network(value: object) -> object:
    if isinstance(value, str):
        try:
            return ipaddress.ip_network(value, strict=True)
        except ValueError as exc:
            raise ValueError(f"'{value}' is not a network in CIDR notation, like 198.18.10.0/24 ({exc})") from None
    return value


Cidr = Annotated[
    ipaddress.IPv4Network | ipaddress.IPv6Network,
    BeforeValidator(_parse_network),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "examples": ["198.18.10.0/24"]}),
]


class Zone(enum.StrEnum):
    """The two e-government networks, which must never touch."""

    INTRANET = "intranet"  # 电子政务内网: classified, physically separate from the internet
    EXTRANET = "extranet"  # 电子政务外网: logically separate


class Tier(enum.StrEnum):
    PROVINCIAL = "provincial"
    MUNICIPAL = "municipal"
    COUNTY = "county"  # only as legacy: counties build no data centers
    DEPARTMENT = "department"  # only as legacy


class DataCenterRole(enum.StrEnum):
    PRODUCTION = "production"
    DR = "dr"


class TenancyKind(enum.StrEnum):
    COUNTY = "county"  # 县/县级市 government
    DISTRICT = "district"  # 市辖区 government
    DEPARTMENT = "department"  # a provincial or city department
    CITY = "city"  # a city government's own systems


class InventoryObject(BaseModel):
    """Base of every inventory object: unknown keys are errors, values are frozen, and the YAML source is kept."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)

    _src: Src | None = PrivateAttr(default=None)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_source(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        src = None
        if isinstance(data, dict) and SRC_KEY in data:
            data = dict(data)
            src = data.pop(SRC_KEY)
        obj = handler(data)
        if isinstance(src, Src):
            obj._src = src
        return obj

    def where(self, key: str | None = None, index: int | None = None) -> SourceRange | None:
        """Where this object (or one of its keys, or one item of a list-valued key) is written."""
        return self._src.at(key, index) if self._src else None


# --------------------------------------------------------------------------------------------------- province
class Standards(InventoryObject):
    """The editions of the standards the province is judged by (see ``dcctl/data/standards.yaml``)."""

    dr: Literal["GB/T 20988-2025", "GB/T 20988-2007"] = Field(
        "GB/T 20988-2025", description="information-system disaster-recovery standard; 2025 replaces 2007"
    )
    mlps: Literal["GB/T 22239-2019"] = Field("GB/T 22239-2019", description="MLPS 2.0 baseline (等级保护基本要求)")


class AuditSettings(InventoryObject):
    retention_days: int = Field(184, ge=1, description="days audit records are kept; never less than 184")


class City(InventoryObject):
    id: Id
    name: str = Field(description="Chinese name, e.g. 沈阳市")
    name_en: str = ""


class Province(InventoryObject):
    id: Id
    name: str
    name_en: str = ""
    standards: Standards = Standards()
    audit: AuditSettings = AuditSettings()
    dr_site: Id = Field(description="id of the provincial DR data center (省级灾备中心)")
    cities: list[City] = Field(min_length=1)


# ---------------------------------------------------------------------------------------------------- catalog
class Flavor(InventoryObject):
    id: Id
    vcpus: int = Field(ge=1, le=256)
    ram_mb: int = Field(ge=64, le=4 * 1024 * 1024)
    disk_gb: int = Field(ge=0, le=65536, description="root disk; 0 means the image's size")


class Image(InventoryObject):
    """A disk image, or a kernel and initrd booted directly (the lab's tiny guests)."""

    id: Id
    name: str = ""
    source: str | None = Field(None, description="URL or local path of the disk image file")
    checksum: str | None = Field(
        None, pattern=r"^sha256:[0-9a-f]{64}$", description="sha256:<hex>, verified before use"
    )
    format: Literal["qcow2", "raw"] = "qcow2"
    min_disk_gb: int = Field(1, ge=1)
    kernel: str | None = Field(None, description="direct kernel boot: path of the kernel on the host")
    initrd: str | None = Field(None, description="direct kernel boot: path of the initrd on the host")
    cmdline: str = Field("console=ttyS0", description="direct kernel boot: kernel command line")

    @model_validator(mode="after")
    def _boots_somehow(self) -> Image:
        if self.source is None and self.kernel is None:
            raise ValueError("an image needs a 'source' (disk image) or a 'kernel' (direct kernel boot)")
        if (self.kernel is None) != (self.initrd is None):
            raise ValueError("direct kernel boot needs both 'kernel' and 'initrd'")
        return self


class Catalog(InventoryObject):
    """Flavors and images shared by every backend of the province."""

    flavors: list[Flavor] = []
    images: list[Image] = []


# --------------------------------------------------------------------------------------------------- backends
class Capacity(InventoryObject):
    vcpus: int = Field(ge=1, description="physical cores (or threads) the backend has for guests")
    ram_gb: int = Field(ge=1)
    storage_gb: int = Field(ge=1)


class Overcommit(InventoryObject):
    cpu: float = Field(1.0, ge=1.0, le=16.0)
    ram: float = Field(1.0, ge=1.0, le=2.0)
    storage: float = Field(1.0, ge=1.0, le=4.0)


class BackendBase(InventoryObject):
    id: Id
    zones: list[Zone] = Field(min_length=1, description="network zones this backend serves")
    level: int = Field(ge=1, le=4, description="MLPS level the platform itself is rated at")
    capacity: Capacity
    overcommit: Overcommit = Overcommit()
    dedicated: bool = Field(False, description="a dedicated resource pool (MLPS level 4 systems need one)")


class OpenStackBackend(BackendBase):
    type: Literal["openstack"]
    cloud: str = Field(description="cloud name in clouds.yaml; credentials never go in the inventory")
    region: str | None = None


class LibvirtBackend(BackendBase):
    type: Literal["libvirt"]
    uri: str = Field(description="libvirt URI: qemu:///system, qemu+ssh://host/system, test:///default")
    storage_path: str = Field(
        "/var/lib/libvirt/images/dcctl", description="directory on the host for dcctl's storage pool"
    )
    virt_type: Literal["kvm", "qemu"] = Field(
        "kvm", description="kvm, or qemu for software emulation (TCG) on hosts without working KVM"
    )
    console_path: str | None = Field(
        None, description="directory on the host for serial logs (ttyS0) and console sockets (ttyS1)"
    )
    dr_path: str = Field(
        "/var/lib/libvirt/dcctl-dr",
        description="directory on the host for DR staging (a source) or replicas (a DR site backend)",
    )
    dr_staging: Literal["auto", "memory", "disk"] = Field(
        "auto",
        description="where a DR point waits on its source host until it has shipped: memory (/dev/shm) spares the "
        "host's disks a write and a read; disk is dr_path; auto takes memory when the point fits in an eighth of the "
        "host's available memory",
    )


Backend = Annotated[OpenStackBackend | LibvirtBackend, Field(discriminator="type")]


class DataCenter(InventoryObject):
    id: Id
    name: str
    tier: Tier
    city: Id | None = Field(None, description="the city a municipal (or legacy county) data center serves")
    role: DataCenterRole = DataCenterRole.PRODUCTION
    legacy: bool = Field(False, description="exists already where the plan says none should be built")
    consolidate_into: Id | None = Field(None, description="for a legacy data center: where it will be consolidated")
    backends: list[Backend] = []


# --------------------------------------------------------------------------------------------------- tenancies
class Network(InventoryObject):
    id: Id
    cidr: Cidr
    zone: Zone | None = Field(None, description="defaults to the tenancy's zone; must equal it")
    mode: Literal["isolated", "routed", "nat"] = "isolated"


class Volume(InventoryObject):
    name: Id
    size_gb: int = Field(ge=1, le=65536)


class ServerGroup(InventoryObject):
    """``count`` identical servers of one role within a workload."""

    name: Id
    count: int = Field(1, ge=0, le=1000)
    flavor: Id
    image: Id
    networks: list[Id] = Field(min_length=1)
    volumes: list[Volume] = []
    anti_affinity: bool = Field(True, description="spread the servers of this group over different hosts")


class Retention(InventoryObject):
    points: int = Field(24, ge=1, le=10000)
    days: int = Field(7, ge=1, le=3650)


class DrPolicy(InventoryObject):
    rpo: Duration = Field(description="recovery point objective: the most data, in time, that may be lost")
    rto: Duration = Field(description="recovery time objective: how long a recovery may take")
    target: Id | None = Field(None, description="DR data center; defaults to the province's dr_site")
    retention: Retention = Retention()


class Workload(InventoryObject):
    id: Id
    name: str
    mlps_level: int = Field(ge=1, le=4, description="MLPS 2.0 protection level (等级保护级别)")
    backend: Id | None = Field(None, description="pin to one backend of the data center; default: placed")
    description: str = ""
    servers: list[ServerGroup] = []
    dr: DrPolicy | None = None


class Quotas(InventoryObject):
    vcpus: int = Field(ge=0)
    ram_gb: int = Field(ge=0)
    storage_gb: int = Field(ge=0)
    instances: int = Field(ge=0)


class Tenancy(InventoryObject):
    id: Id
    name: str
    kind: TenancyKind
    city: Id | None = Field(None, description="the city this county, district or department belongs to")
    hosted_in: Id = Field(description="data center that hosts this tenancy")
    zone: Zone
    quotas: Quotas
    admins: list[str] = Field([], description="user names of the tenancy's administrators")
    networks: list[Network] = []
    workloads: list[Workload] = []


class InventoryFile(InventoryObject):
    """One file of an inventory directory; any section may appear in any file, ``province`` in exactly one."""

    model_config = ConfigDict(
        title="dcctl inventory file",
        json_schema_extra={"$comment": "Generated by `dcctl schema`; see README.md for the layout."},
    )

    province: Province | None = None
    catalog: Catalog | None = None
    data_centers: list[DataCenter] = []
    tenancies: list[Tenancy] = []
