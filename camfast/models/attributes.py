"""CelebA attribute lists used by the original backbones.

The order matters: it is the order of the entries of the condition vector ``c``
and of the discriminator's attribute logits.
"""

# The 40 CelebA attributes, in the column order of list_attr_celeba.txt.
CELEBA_ATTRIBUTES = [
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald",
    "Bangs", "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair",
    "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin",
    "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones",
    "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard",
    "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks",
    "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings",
    "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
]

# StarGAN (Choi et al. 2018), CelebA experiments: three hair colours (mutually
# exclusive, the caller keeps exactly one of them set), gender and age.
STARGAN_ATTRIBUTES = ["Black_Hair", "Blond_Hair", "Brown_Hair", "Male", "Young"]

# AttGAN (He et al. 2019) and STGAN (Liu et al. 2019) both train on these 13.
ATTGAN_ATTRIBUTES = [
    "Bald", "Bangs", "Black_Hair", "Blond_Hair", "Brown_Hair", "Bushy_Eyebrows",
    "Eyeglasses", "Male", "Mouth_Slightly_Open", "Mustache", "No_Beard", "Pale_Skin", "Young",
]
STGAN_ATTRIBUTES = list(ATTGAN_ATTRIBUTES)

ATTRIBUTES = {
    "stargan": STARGAN_ATTRIBUTES,
    "attgan": ATTGAN_ATTRIBUTES,
    "stgan": STGAN_ATTRIBUTES,
}
