"""Failed staff logins throttled by django-axes (settings AXES_*)."""

from axes.backends import AxesStandaloneBackend


class LoginThrottleBackend(AxesStandaloneBackend):
    """django-axes' backend for every login that comes with its request (the admin's and
    any staff login form, which all call ``authenticate(request, ...)``).

    ``authenticate()`` without a request (a management command, the test client's
    ``login()``) has no address to count against: it is left to the next backend instead
    of refused."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
