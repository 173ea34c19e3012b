"""The site's middleware, async-native: under daphne a request to an async view stays on the event loop.

Django's ``MiddlewareMixin`` runs every ``process_request``/``process_view``/
``process_response`` of an async chain through ``sync_to_async`` (a thread hop
each, ~13 per request with the stack in ``settings.MIDDLEWARE``), and WhiteNoise's
middleware is sync-only, which moved the whole rest of the chain into a thread
per request. The hooks below do no I/O for what the hot paths do (``/healthz``,
joins, answers), so they run inline; the cases that can touch the database go to
a thread as before: saving a modified session, storing messages, CSRF tokens kept
in the session, finding static files on disk in development.

Under a sync chain (WSGI, the test ``Client``) they behave exactly like Django's.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.middleware import clickjacking, common, csrf, security
from django.utils.deprecation import MiddlewareMixin
from whitenoise import middleware as whitenoise


class InlineHooks(MiddlewareMixin):
    """Runs the hooks on the event loop; :meth:`response_needs_thread` says when not to."""

    def response_needs_thread(self, request: Any) -> bool:
        return False

    async def __acall__(self, request: Any) -> Any:
        response = None
        if hasattr(self, "process_request"):
            response = self.process_request(request)
        response = response or await self.get_response(request)  # type: ignore[misc]
        if hasattr(self, "process_response"):
            if self.response_needs_thread(request):
                return await sync_to_async(self.process_response, thread_sensitive=True)(request, response)
            response = self.process_response(request, response)
        return response


class SecurityMiddleware(InlineHooks, security.SecurityMiddleware):
    pass


class CommonMiddleware(InlineHooks, common.CommonMiddleware):
    pass


class XFrameOptionsMiddleware(InlineHooks, clickjacking.XFrameOptionsMiddleware):
    pass


class AuthenticationMiddleware(InlineHooks, auth.AuthenticationMiddleware):
    """``request.user`` is lazy: the session and user are read when a view asks (in its thread)."""


class SessionMiddleware(InlineHooks, sessions.SessionMiddleware):
    """The session store is lazy; only saving a modified session is I/O."""

    def response_needs_thread(self, request: Any) -> bool:
        session = getattr(request, "session", None)
        return session is not None and (session.modified or settings.SESSION_SAVE_EVERY_REQUEST)


class MessageMiddleware(InlineHooks, messages.MessageMiddleware):
    """Storing messages may load the session: only when a message was read or added."""

    def response_needs_thread(self, request: Any) -> bool:
        storage = getattr(request, "_messages", None)
        return storage is not None and (storage.used or storage.added_new)


class CsrfViewMiddleware(InlineHooks, csrf.CsrfViewMiddleware):
    """Tokens in a cookie are pure computation; with ``CSRF_USE_SESSIONS`` every hook may read the session."""

    def __init__(self, get_response: Any) -> None:
        super().__init__(get_response)
        if self.async_mode:
            # Django adapts process_view by its kind when it builds an async
            # chain: a coroutine function is awaited as is, a sync one hops.
            self.process_view = self.aprocess_view  # type: ignore[method-assign]

    async def __acall__(self, request: Any) -> Any:
        if settings.CSRF_USE_SESSIONS:
            return await MiddlewareMixin.__acall__(self, request)
        return await super().__acall__(request)

    async def aprocess_view(self, request: Any, callback: Any, args: Any, kwargs: Any) -> Any:
        process_view = csrf.CsrfViewMiddleware.process_view
        if settings.CSRF_USE_SESSIONS:
            return await sync_to_async(process_view, thread_sensitive=True)(
                self, request, callback, args, kwargs
            )
        return process_view(self, request, callback, args, kwargs)


class WhiteNoiseMiddleware(whitenoise.WhiteNoiseMiddleware):
    """Static files as before; everything else passes through without a thread."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any = None, settings: Any = settings) -> None:
        super().__init__(get_response, settings=settings)
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        return super().__call__(request)

    async def __acall__(self, request: Any) -> Any:
        url = request.path_info
        if not self.autorefresh:
            static_file = self.files.get(url)
        elif url.startswith((self.static_prefix, *(prefix for _, prefix in self.directories))):
            # Development: files under a static prefix are looked up on disk at each request.
            static_file = await sync_to_async(self.find_file, thread_sensitive=False)(url)
        else:
            static_file = None
        if static_file is not None:
            return await sync_to_async(self.serve, thread_sensitive=False)(static_file, request)
        return await self.get_response(request)
