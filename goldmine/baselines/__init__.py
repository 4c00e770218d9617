"""The classic models, trained and served on the same paths as the large ones, so that every
task can answer "how much better is the big model than the cheap one?".

    logreg.py   hashed word and character n-grams + multinomial logistic regression
                (`goldmine finetune classify --arch logreg`)
    cnn.py      a small convolutional network for images
                (`goldmine finetune classify --arch cnn`)
"""
