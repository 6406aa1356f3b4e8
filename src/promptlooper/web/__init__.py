"""Pages and static files served by the app (the browser side of online experiments)."""
