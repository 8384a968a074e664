"""The Scan room: Analysis ▸ Scan dataset…, the Scan view (table, filters, histogram) and its links to the
canvas and the gallery."""
