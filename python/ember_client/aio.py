"""AsyncClient: Client's calls as coroutines, on grpc.aio."""
import grpc
import grpc.aio

from . import _common
from ._common import DEFAULT_TIMEOUT, pb
from .client import _methods


class AsyncClient(_common.Base):
    """Client (same arguments, same methods) for asyncio: every call is a coroutine.

    Create it inside the running event loop (grpc.aio binds the channel to it) and close it
    with `await client.close()` or `async with AsyncClient(...) as client:`. Many calls may be
    in flight at once on the one channel (asyncio.gather)."""

    def __init__(self, target, model=None, *, token=None, tls=None, tls_cert=None, tls_key=None,
                 tls_server_name=None, timeout=DEFAULT_TIMEOUT, options=None):
        super().__init__(target, model, token, tls, tls_cert, tls_key, tls_server_name, timeout, options)
        chan_target, creds, opts, _ = self._chan
        if creds is None:
            self.channel = grpc.aio.insecure_channel(chan_target, options=opts)
        else:
            self.channel = grpc.aio.secure_channel(chan_target, creds, options=opts)
        self._predict, self._sample, self._list, self._get = _methods(self.channel)

    async def _call(self, method, req, timeout):
        try:
            return await method(req, timeout=self._timeout(timeout), metadata=self._metadata)
        except grpc.RpcError as e:  # grpc.aio.AioRpcError is one
            raise _common.rpc_error(e) from None

    async def predict(self, x=None, model=None, *, images=None, version=0, seed=0, samples=None,
                      iterations=None, sigma=None, shrink=None, temperature=None, refine_steps=None,
                      refine_lr=None, langevin=None, row_offset=0, timeout=None):
        """As Client.predict."""
        return (await self.predict_full(x, model, images=images, version=version, seed=seed, samples=samples,
                                        iterations=iterations, sigma=sigma, shrink=shrink, temperature=temperature,
                                        refine_steps=refine_steps, refine_lr=refine_lr, langevin=langevin,
                                        row_offset=row_offset, timeout=timeout)).y

    async def predict_full(self, x=None, model=None, *, images=None, version=0, seed=0, samples=None,
                           iterations=None, sigma=None, shrink=None, temperature=None, refine_steps=None,
                           refine_lr=None, langevin=None, row_offset=0, timeout=None):
        """As Client.predict_full."""
        req, rows, one = self._predict_req(x, model, version, seed, samples, iterations, sigma, shrink,
                                           temperature, refine_steps, refine_lr, langevin, row_offset, images)
        return _common.prediction(await self._call(self._predict, req, timeout), rows, one)

    async def sample(self, x=None, model=None, *, images=None, modes=None, radius=None, min_mass=None,
                     polish_steps=None, version=0, seed=0, samples=None, iterations=None, sigma=None, shrink=None,
                     temperature=None, langevin=None, row_offset=0, timeout=None):
        """As Client.sample."""
        return (await self.sample_full(x, model, images=images, modes=modes, radius=radius, min_mass=min_mass,
                                       polish_steps=polish_steps, version=version, seed=seed, samples=samples,
                                       iterations=iterations, sigma=sigma, shrink=shrink, temperature=temperature,
                                       langevin=langevin, row_offset=row_offset, timeout=timeout)).modes

    async def sample_full(self, x=None, model=None, *, images=None, modes=None, radius=None, min_mass=None,
                          polish_steps=None, return_samples=False, version=0, seed=0, samples=None,
                          iterations=None, sigma=None, shrink=None, temperature=None, langevin=None, row_offset=0,
                          timeout=None):
        """As Client.sample_full."""
        req, rows, one = self._sample_req(x, model, version, modes, radius, min_mass, polish_steps, return_samples,
                                          seed, samples, iterations, sigma, shrink, temperature, langevin,
                                          row_offset, images)
        return _common.sampled(await self._call(self._sample, req, timeout), rows, one, return_samples)

    async def models(self, timeout=None):
        """As Client.models."""
        resp = await self._call(self._list, pb.ListModelsRequest(), timeout)
        return [_common.model_info(m) for m in resp.models]

    async def info(self, model=None, version=0, timeout=None):
        """As Client.info."""
        return _common.model_info(await self._call(self._get, self._info_req(model, version), timeout))

    async def close(self):
        await self.channel.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()
        return False


__all__ = ["AsyncClient"]
