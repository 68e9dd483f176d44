"""A small client for Teapot's API: Keystone auth and the catalog through openstacksdk/keystoneauth1."""

from __future__ import annotations

from keystoneauth1 import adapter
from keystoneauth1 import exceptions as ksa_exc

SERVICE_TYPE = "teapot"


class TeapotError(Exception):
    """An API error, with the server's explanation."""


def _detail(response) -> str:
    try:
        errors = response.json().get("errors") or []
        if errors:
            return errors[0].get("detail") or errors[0].get("title")
    except ValueError:
        pass
    return f"{response.status_code} {response.reason}"


class TeapotClient:
    def __init__(self, session, region_name: str | None = None, interface: str = "public"):
        self.api = adapter.Adapter(session, service_type=SERVICE_TYPE, interface=interface,
                                   region_name=region_name, raise_exc=False)

    @classmethod
    def from_cloud(cls, cloud: str | None, config_file: str | None = None) -> TeapotClient:
        import openstack.config

        loader = openstack.config.OpenStackConfig(config_files=[config_file] if config_file else None)
        try:
            region = loader.get_one(cloud=cloud)
        except Exception as e:  # openstacksdk raises several kinds for a missing or broken cloud
            raise TeapotError(f"cloud {cloud!r}: {e}") from None
        return cls(region.get_session(), region.region_name, region.config.get("interface", "public"))

    def _call(self, method: str, path: str, **kwargs):
        try:
            response = self.api.request(path, method, **kwargs)
        except ksa_exc.EndpointNotFound:
            raise TeapotError("no Teapot endpoint in the catalog (service type 'teapot')") from None
        except ksa_exc.ClientException as e:
            raise TeapotError(str(e)) from None
        if response.status_code >= 400:
            raise TeapotError(_detail(response))
        return response.json() if response.content else None

    def _list(self, path: str, key: str) -> list[dict]:
        """Every object of a list, following its `next` links page after page."""
        out: list[dict] = []
        while path:
            body = self._call("GET", path)
            out.extend(body[key])
            following = body.get("next")
            path = following[following.index("/v1/") + 3:] if following else None
        return out

    def list_hosts(self) -> list[dict]:
        return self._list("/hosts", "hosts")

    def get_host(self, ident: str) -> dict:
        return self._call("GET", f"/hosts/{ident}")

    def create_host(self, body: dict) -> dict:
        return self._call("POST", "/hosts", json=body)

    def update_host(self, ident: str, patch: dict) -> dict:
        return self._call("PATCH", f"/hosts/{ident}", json=patch,
                          headers={"Content-Type": "application/merge-patch+json"})

    def delete_host(self, ident: str) -> dict:
        return self._call("DELETE", f"/hosts/{ident}")

    def list_hostclasses(self) -> list[dict]:
        return self._list("/hostclasses", "hostclasses")

    def create_hostclass(self, body: dict) -> dict:
        return self._call("POST", "/hostclasses", json=body)

    def delete_hostclass(self, name: str) -> None:
        self._call("DELETE", f"/hostclasses/{name}")

    def list_networks(self) -> list[dict]:
        return self._list("/networks", "networks")

    def get_network(self, ident: str) -> dict:
        return self._call("GET", f"/networks/{ident}")

    def create_network(self, body: dict) -> dict:
        return self._call("POST", "/networks", json=body)

    def delete_network(self, ident: str) -> None:
        self._call("DELETE", f"/networks/{ident}")

    def list_loadbalancers(self) -> list[dict]:
        return self._list("/loadbalancers", "loadbalancers")

    def get_loadbalancer(self, ident: str) -> dict:
        return self._call("GET", f"/loadbalancers/{ident}")

    def create_loadbalancer(self, body: dict) -> dict:
        return self._call("POST", "/loadbalancers", json=body)

    def update_loadbalancer(self, ident: str, body: dict) -> dict:
        return self._call("PATCH", f"/loadbalancers/{ident}", json=body)

    def delete_loadbalancer(self, ident: str) -> None:
        self._call("DELETE", f"/loadbalancers/{ident}")

    def list_volume_attachments(self, cluster: str) -> list[dict]:
        return self._call("GET", f"/clusters/{cluster}/volume_attachments")["volume_attachments"]

    def attach_volume(self, cluster: str, volume_id: str, host: str) -> dict:
        return self._call("POST", f"/clusters/{cluster}/volume_attachments",
                          json={"volume_id": volume_id, "host": host})

    def detach_volume(self, cluster: str, attachment: str) -> None:
        self._call("DELETE", f"/clusters/{cluster}/volume_attachments/{attachment}")
