import unittest

from pricing.discount import apply_discount, total


class DiscountTest(unittest.TestCase):
    def test_discount_takes_percent_off(self):
        self.assertEqual(apply_discount(2000, 15), 1700)
        self.assertEqual(apply_discount(999, 15), 849)  # rounded down to a whole cent
        self.assertEqual(apply_discount(999, 0), 999)

    def test_rejects_a_discount_outside_0_to_100(self):
        with self.assertRaises(ValueError):
            apply_discount(100, 101)

    def test_total_sums_quantity_times_price(self):
        self.assertEqual(total([(2, 150), (1, 999)]), 1299)


if __name__ == "__main__":
    unittest.main()
