"""LLM endpoints: the model catalog, recipe choice, weight sources and the OpenAI gateway."""

from ._catalog import Catalog, CatalogModel, EngineRecipe, derive_name, load_catalog
from ._container import ENGINE_PORT
from ._gateway import EndpointGateway, GatewayRoute
from ._models import REGIONS, EndpointCreate, EndpointInfo, EndpointRecordSpec, UsageRow
from ._recipes import Hardware, Recipe, select_recipe

__all__ = [
    "ENGINE_PORT",
    "REGIONS",
    "Catalog",
    "CatalogModel",
    "EndpointCreate",
    "EndpointGateway",
    "EndpointInfo",
    "EndpointRecordSpec",
    "EngineRecipe",
    "GatewayRoute",
    "Hardware",
    "Recipe",
    "UsageRow",
    "derive_name",
    "load_catalog",
    "select_recipe",
]
