"""The order-preserving process map."""

from components.parallel import ordered_map


def _square(x: int) -> int:
    return x * x


def test_ordered_map_keeps_input_order_and_pulls_input_lazily():
    pulled = []

    def items():
        for i in range(40):
            pulled.append(i)
            yield i

    results = ordered_map(_square, items(), workers=2, window_per_worker=2)
    assert next(results) == 0
    assert len(pulled) <= 2 * 2 + 1  # a bounded window, not the whole input
    assert [0, *results] == [i * i for i in range(40)]


def test_one_worker_maps_in_this_process():
    assert list(ordered_map(_square, range(5), workers=1)) == [0, 1, 4, 9, 16]
