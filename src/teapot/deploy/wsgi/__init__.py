"""WSGI entry points for services served by gunicorn.

OpenStack services parse `sys.argv` with oslo.config when their WSGI application loads; under gunicorn
that is gunicorn's command line. These entry points clear it first; the services read their config
files from the environment as they do under any WSGI server.
"""
