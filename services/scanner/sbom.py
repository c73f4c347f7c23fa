"""CycloneDX SBOM of an image's inventory, made with cyclonedx-python-lib.

The image is the BOM's metadata component (type ``container``); each installed package is a
``library`` component with a package URL (github.com/package-url/purl-spec PURL-TYPES.rst:
``deb``/``rpm`` with the distribution as namespace and a ``distro`` qualifier, ``apk`` under
``alpine``, ``pypi``, ``npm`` with the scope as namespace) and Dockyard properties naming the
source package, the file it was read from and the layer that introduced it.
"""

from __future__ import annotations

from cyclonedx.model import Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output import make_outputter
from cyclonedx.schema import OutputFormat, SchemaVersion
from packageurl import PackageURL

from services.scanner.models import Distribution, Inventory, Package

__all__ = ["cyclonedx_json", "purl"]


def purl(package: Package, distribution: Distribution | None) -> PackageURL:
    if package.kind in {"deb", "rpm", "apk"}:
        distro = distribution.id if distribution else None
        qualifiers = {"distro": f"{distribution.id}-{distribution.version_id}"} if distribution \
            else {}
        namespace = "alpine" if package.kind == "apk" else distro
        return PackageURL(type=package.kind, namespace=namespace, name=package.name,
                          version=package.version, qualifiers=qualifiers)
    if package.kind == "npm" and package.name.startswith("@") and "/" in package.name:
        scope, _, name = package.name.partition("/")
        return PackageURL(type="npm", namespace=scope, name=name, version=package.version)
    return PackageURL(type=package.kind, name=package.name, version=package.version)


def cyclonedx_json(repository: str, digest: str, inventory: Inventory) -> str:
    bom = Bom()
    image = Component(name=repository, version=digest, type=ComponentType.CONTAINER,
                      bom_ref=f"{repository}@{digest}")
    bom.metadata.component = image
    components = []
    for package in inventory.packages:
        url = purl(package, inventory.distribution)
        properties = [Property(name="dockyard:layer", value=package.layer),
                      Property(name="dockyard:path", value=package.path)]
        if package.source_name:
            properties.append(Property(name="dockyard:source_name", value=package.source_name))
        if package.source_version:
            properties.append(Property(name="dockyard:source_version",
                                       value=package.source_version))
        component = Component(name=package.name, version=package.version,
                              type=ComponentType.LIBRARY, purl=url,
                              bom_ref=f"{url.to_string()}#{package.path}",
                              properties=properties)
        bom.components.add(component)
        components.append(component)
    # Without this the library warns that the graph is incomplete: the image holds them all.
    bom.register_dependency(image, components)
    return make_outputter(bom, OutputFormat.JSON, SchemaVersion.V1_6).output_as_string()
