"""/api/v1/products: each channel's product catalog, kept in step with its product webhooks."""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import select

from ..db import get_session
from ..models import Product
from ..products import sku_filter
from . import paging
from .lookup import get_or_404
from .schemas import ProductDetailSchema, ProductQuerySchema, ProductSchema

PREFIX = "/products"
blp = Blueprint("products", __name__,
                description="The product catalog per channel: variants, SKUs, prices, history")


@blp.route("")
class Products(MethodView):
    @blp.arguments(ProductQuerySchema, location="query")
    @blp.response(200, ProductSchema(many=True), headers=paging.LINK_HEADER)
    def get(self, args):
        """Find products by channel, channel product id, SKU and deleted or not, oldest first"""
        query = select(Product)
        for name in ("channel_id", "channel_product_id"):
            if args.get(name) is not None:
                query = query.where(getattr(Product, name) == args[name])
        if args.get("sku") is not None:
            query = query.where(sku_filter(args["sku"]))
        if args.get("deleted") is not None:
            query = query.where(Product.deleted_at.is_not(None) if args["deleted"]
                                else Product.deleted_at.is_(None))
        return paging.page(get_session(), query, Product.id, args)


@blp.route("/<int:product_id>")
class ProductById(MethodView):
    @blp.response(200, ProductDetailSchema)
    def get(self, product_id):
        """A product with its variants and its history"""
        return get_or_404(get_session(), Product, product_id, "product")
