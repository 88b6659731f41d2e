# Type stubs for the tlsrekey package (python/tlsrekey/__init__.py); the C half is
# described in _tlsrekey.pyi. Kept in step with the code by tests/python/test_package.py.
import os
from typing import Literal, Mapping, Sequence, Tuple, Union, overload

from typing_extensions import TypeAlias

from . import _tlsrekey
from ._tlsrekey import (
    KEY_UPDATE_NONE as KEY_UPDATE_NONE,
    KEY_UPDATE_NOT_REQUESTED as KEY_UPDATE_NOT_REQUESTED,
    KEY_UPDATE_REQUESTED as KEY_UPDATE_REQUESTED,
    OPENSSL_VERSION as OPENSSL_VERSION,
    CallbackError as CallbackError,
    CertificateError as CertificateError,
    Connection as Connection,
    Error as Error,
    KeyUpdateType as KeyUpdateType,
    ProtocolError as ProtocolError,
    StateError as StateError,
    SyscallError as SyscallError,
    TimeoutError as TimeoutError,
    WantReadError as WantReadError,
    WantWriteError as WantWriteError,
    ZeroReturnError as ZeroReturnError,
    __version__ as __version__,
    make_test_cert as make_test_cert,
)

_Path: TypeAlias = Union[str, os.PathLike[str]]
_Source: TypeAlias = Union[_Path, bytes, bytearray, memoryview]
_Version: TypeAlias = Literal["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3", "DTLSv1",
                              "DTLSv1.2"]

__all__: list[str]

class Context(_tlsrekey.Context):
    @classmethod
    def client(
        cls,
        cafile: _Source | None = None,
        capath: _Path | None = None,
        *,
        verify: bool = True,
        check_hostname: bool = True,
        min_version: _Version | str | None = "TLSv1.2",
        max_version: _Version | str | None = None,
        cert: _Source | None = None,
        key: _Source | None = None,
        ciphers: str | None = None,
        ciphersuites: str | None = None,
        groups: str | None = None,
        alpn: Sequence[str | bytes] | None = None,
        keylog: _Path | bool | None = None,
        ignore_unexpected_eof: bool = False,
        release_buffers: bool = False,
        no_renegotiation: bool = False,
        rekey: Mapping[str, int | float | bool | None] | None = None,
        dtls: bool = False,
        dtls_initial_timeout: float | None = None,
    ) -> Context: ...
    @classmethod
    def server(
        cls,
        cert: _Source | None = None,
        key: _Source | None = None,
        *,
        allow_client_renegotiation: bool = False,
        no_renegotiation: bool = False,
        verify_client: bool | Literal["optional"] = False,
        cafile: _Source | None = None,
        capath: _Path | None = None,
        min_version: _Version | str | None = "TLSv1.2",
        max_version: _Version | str | None = None,
        ciphers: str | None = None,
        ciphersuites: str | None = None,
        groups: str | None = None,
        alpn: Sequence[str | bytes] | None = None,
        keylog: _Path | bool | None = None,
        ignore_unexpected_eof: bool = False,
        release_buffers: bool = False,
        num_tickets: int | None = None,
        session_cache: bool = True,
        session_tickets: bool = True,
        rekey: Mapping[str, int | float | bool | None] | None = None,
        dtls: bool = False,
        cookie_exchange: bool = True,
        dtls_initial_timeout: float | None = None,
    ) -> Context: ...

@overload
def pair(
    *,
    client_ctx: Context,
    server_ctx: Context,
    server_hostname: str | None = "localhost",
) -> Tuple[Connection, Connection]: ...
@overload
def pair(
    *,
    cert: _Source | None = None,
    key: _Source | None = None,
    cafile: _Source | None = None,
    client_cert: _Source | None = None,
    client_key: _Source | None = None,
    server_hostname: str | None = "localhost",
    client_ctx: None = None,
    server_ctx: None = None,
    min_version: _Version | str | None = ...,
    max_version: _Version | str | None = ...,
    ciphers: str | None = ...,
    ciphersuites: str | None = ...,
    groups: str | None = ...,
    alpn: Sequence[str | bytes] | None = ...,
    keylog: _Path | bool | None = ...,
    ignore_unexpected_eof: bool = ...,
    release_buffers: bool = ...,
    no_renegotiation: bool = ...,
    rekey: Mapping[str, int | float | bool | None] | None = ...,
    dtls: bool = ...,
    dtls_initial_timeout: float | None = ...,
    allow_client_renegotiation: bool = ...,
    verify_client: bool | Literal["optional"] = ...,
    num_tickets: int | None = ...,
    session_cache: bool = ...,
    session_tickets: bool = ...,
    cookie_exchange: bool = ...,
    verify: bool = ...,
    check_hostname: bool = ...,
    capath: _Path | None = ...,
) -> Tuple[Connection, Connection]: ...
