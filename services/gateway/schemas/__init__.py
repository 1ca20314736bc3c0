"""Request and response types of the HTTP API (the OpenAPI document is generated from these)."""

from services.gateway.schemas.account_admin import *
from services.gateway.schemas.accounts import *
from services.gateway.schemas.base import *
from services.gateway.schemas.pool import *
from services.gateway.schemas.review import *
