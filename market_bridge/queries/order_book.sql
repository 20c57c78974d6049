-- Queries on md.order_book.

-- name: latest_snapshot
SELECT snapshot_timestamp, bid_prices, bid_quantities, bid_orders,
       ask_prices, ask_quantities, ask_orders, total_buy_quantity, total_sell_quantity
FROM md.order_book
WHERE exchange = %(exchange)s AND symbol = %(symbol)s
ORDER BY snapshot_timestamp DESC
LIMIT 1;
